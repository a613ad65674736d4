"""An SAE's reconstruction of one located cross-section, read from the trace: what the score
pass judges a member on and what a suite patches in for it (runtime/passes/score.py, suite.py).

The variant (`direct`, `residual`, `residual_pair`) and, for `residual_pair`, the partner were
settled from configs (runtime/saes/serving.py). A transcoder is `direct` at its mlp_out site and
reads the MLP's input (METHOD.md section 10). Each SAE reads its input as it was trained to
(TransformerLens preprocessing, runtime/saes/preprocessing.py), through thin wrappers around the
reconstruct.* calls, which run the SAE's own encoder and decoder and keep only the active latents
(runtime/sage/sparse.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from runtime.passes import common
from runtime.passes.trace import read
from runtime.sage import reconstruct
from runtime.sage.evaluate import SaeSite
from runtime.sage.sparse import Latents
from runtime.saes import preprocessing
from runtime.saes.serving import residual_point
from sagec.locations import CrossSection, Location

# (SAE name, prompt group, position) -> (D(E(r)), E(r)) of the stream at the SAE's own point
Streams = dict[tuple[str, str, str], tuple[torch.Tensor, Latents]]


def sae_site(trace, rows: Sequence[int], attributes: Sequence[str], sae, how: str, site: str,
             pair: tuple[Location, object] | None = None, streams: Streams | None = None) -> SaeSite:
    """`sae` (a runtime.saes.loading.LoadedSae) at `site` under variant `how`, on the test rows:
    the clean reconstruction, the clean and every attribute twin's latents (in decoder-row
    units) and the decoder rows. `pair`: (the stream before the sublayer, the partner SAE) for
    residual_pair. `streams`: shared by the calls of one pass, so the sublayers an SAE serves at
    one point encode the stream there once."""
    where = common.parse_site(site)

    def group(g: str) -> tuple[torch.Tensor, Latents]:
        def stream(location: Location) -> torch.Tensor:
            return read(trace, g, CrossSection(location, where.position), rows)

        c = read(trace, g, site, rows)
        if how == "direct" and sae.input_location is not None:
            return preprocessing.transcode(sae.sae, sae.preprocessing, stream(sae.input_location), c)
        if how == "direct":
            return preprocessing.direct(sae.sae, sae.preprocessing, c)
        r_after = stream(residual_point(sae.location))
        if how == "residual":
            key = (sae.name, g, where.position)
            after = streams.get(key) if streams is not None else None
            if after is None:
                after = preprocessing.encoded(sae.sae, sae.preprocessing, r_after)
                if streams is not None:
                    streams[key] = after
            return preprocessing.residual(sae.sae, sae.preprocessing, r_after, c, after=after)
        before, partner = pair
        return preprocessing.residual_pair(partner.sae, partner.preprocessing, sae.sae, sae.preprocessing, stream(before), r_after, c)

    with torch.no_grad():
        a_hat, f = group("clean")
        twin_f = {a: group(f"twin:{a}")[1] for a in attributes}
    w_dec = reconstruct.pair_decoder(pair[1].sae, sae.sae) if pair else sae.sae.W_dec
    factor = reconstruct.latent_scale(sae.sae, pair[1].sae if pair else None)  # in decoder-row units
    if factor is not None:
        f, twin_f = f.scaled(factor), {a: t.scaled(factor) for a, t in twin_f.items()}
    return SaeSite(a_hat=a_hat, f=f, twin_f=twin_f, w_dec=w_dec.detach())
