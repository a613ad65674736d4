"""The runtime: executes a Plan against nnsight models and sae_lens SAEs."""
