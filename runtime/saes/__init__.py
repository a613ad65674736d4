"""SAEs: loading through sae_lens, identities, where each reads and whether it fits the model."""
