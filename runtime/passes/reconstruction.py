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

# (SAE name, position) -> (D(E(r)), E(r)) of the stream at the SAE's own point, every group's rows
Streams = dict[tuple[str, str], tuple[torch.Tensor, Latents]]


def sae_site(trace, rows: Sequence[int], attributes: Sequence[str], sae, how: str, site: str,
             pair: tuple[Location, object] | None = None, streams: Streams | None = None) -> SaeSite:
    """`sae` (a runtime.saes.loading.LoadedSae) at `site` under variant `how`, on the test rows:
    the clean reconstruction, the clean and every attribute twin's latents (in decoder-row
    units) and the decoder rows. `pair`: (the stream before the sublayer, the partner SAE) for
    residual_pair. `streams`: shared by the calls of one pass, so the sublayers an SAE serves at
    one point encode the stream there once.

    Every prompt group's rows go through each encoder call together: a wide SAE's encoder reads
    its weights once per call, whatever the rows."""
    groups = ("clean", *(f"twin:{a}" for a in attributes))
    n, where = len(rows), common.parse_site(site)

    def stream(location: Location) -> torch.Tensor:
        return torch.cat([read(trace, g, CrossSection(location, where.position), rows) for g in groups])

    c = torch.cat([read(trace, g, site, rows) for g in groups])
    with torch.no_grad():
        if how == "direct" and sae.input_location is not None:
            c_hat, f = preprocessing.transcode(sae.sae, sae.preprocessing, stream(sae.input_location), c)
        elif how == "direct":
            c_hat, f = preprocessing.direct(sae.sae, sae.preprocessing, c)
        elif how == "residual":
            r_after = stream(residual_point(sae.location))
            key = (sae.name, where.position)
            after = streams.get(key) if streams is not None else None
            if after is None:
                after = preprocessing.encoded(sae.sae, sae.preprocessing, r_after)
                if streams is not None:
                    streams[key] = after
            c_hat, f = preprocessing.residual(sae.sae, sae.preprocessing, r_after, c, after=after)
        else:
            before, partner = pair
            c_hat, f = preprocessing.residual_pair(partner.sae, partner.preprocessing, sae.sae, sae.preprocessing,
                                                   stream(before), stream(residual_point(sae.location)), c)
    latents = {g: f.rows(i * n, (i + 1) * n) for i, g in enumerate(groups)}
    w_dec = reconstruct.pair_decoder(pair[1].sae, sae.sae) if pair else sae.sae.W_dec
    factor = reconstruct.latent_scale(sae.sae, pair[1].sae if pair else None)  # in decoder-row units
    if factor is not None:
        latents = {g: f.scaled(factor) for g, f in latents.items()}
    return SaeSite(a_hat=c_hat[:n], f=latents["clean"], twin_f={a: latents[f"twin:{a}"] for a in attributes}, w_dec=w_dec.detach())
