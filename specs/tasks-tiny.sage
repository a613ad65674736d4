# Four tasks of the library on the zoo's tiny-tasks: agreement, capitals, greater-than and pronoun
# (specs/tasks/, the same files the SmolLM2 specs include) on a 4-layer GPT-2 the project trains
# itself on exactly these tasks (runtime/zoo), so each runs offline in a minute or two. Each eval
# measures its task on the held-out split; the zoo's four residual SAE kinds (standard L1, TopK
# k=8 and k=32, and a deliberately weak one) are scored against each other.

include "tasks/agreement.sage"
include "tasks/capitals.sage"
include "tasks/greater_than.sage"
include "tasks/pronoun.sage"

model tiny {
  source zoo "tiny-tasks"
}

sae l1[l] for l in 0..3 {
  source zoo "tiny-tasks/relu-l1/resid_post.{{l}}"
}

sae topk8[l] for l in 0..3 {
  source zoo "tiny-tasks/topk-k8/resid_post.{{l}}"
}

sae topk32[l] for l in 0..3 {
  source zoo "tiny-tasks/topk-k32/resid_post.{{l}}"
}

sae weak[l] for l in 0..3 {
  source zoo "tiny-tasks/weak/resid_post.{{l}}"
}

eval agreement_tiny {
  model tiny
  task agreement
  locate {
    method attribution
    components heads, mlp
    positions subject, end
    select top 4
    verify patching
  }
  saes l1[*], topk8[*], topk32[*], weak[*] reconstruct residual
  baselines pca, neurons, random
  score sufficiency, necessity, control, interpretability, explained_variance, l0
  report "runs/tiny/agreement" as html, json
}

eval capital_tiny {
  model tiny
  task capital
  locate {
    method attribution
    components heads, mlp
    positions country, end
    select top 4
    verify patching
  }
  saes l1[*], topk8[*], topk32[*], weak[*] reconstruct residual
  baselines pca, neurons, random
  score sufficiency, necessity, control, interpretability, explained_variance, l0
  report "runs/tiny/capitals" as html, json
}

eval greater_than_tiny {
  model tiny
  task greater_than
  locate {
    method attribution
    components heads, mlp
    positions tens, ones, end
    select top 4
    verify patching
  }
  saes l1[*], topk8[*], topk32[*], weak[*] reconstruct residual
  baselines pca, neurons, random
  score sufficiency, necessity, control, interpretability, explained_variance, l0
  report "runs/tiny/greater_than" as html, json
}

eval pronoun_tiny {
  model tiny
  task pronoun
  locate {
    method attribution
    components heads, mlp
    positions name, end
    select top 4
    verify patching
  }
  saes l1[*], topk8[*], topk32[*], weak[*] reconstruct residual
  baselines pca, neurons, random
  score sufficiency, necessity, control, interpretability, explained_variance, l0
  report "runs/tiny/pronoun" as html, json
}
