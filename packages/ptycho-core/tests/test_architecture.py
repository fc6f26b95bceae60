"""The network's layer sizes, defined once in ptycho-core for every backend."""

from __future__ import annotations

import pytest

from ptycho_core.architecture import PROBE_BIG_BORDER, decoder_filters, encoder_filters, probe_big_filters


@pytest.mark.parametrize(("N", "nfs", "encoder", "decoder", "big"), [
    (64, 2, [64, 128, 256], [128, 64], 64),
    (128, 1, [16, 32, 64, 128], [128, 64, 32], 16),
    (256, 1, [8, 16, 32, 64, 128], [256, 128, 64, 32], 8),
])
def test_layer_sizes(N, nfs, encoder, decoder, big):
    assert encoder_filters(N, nfs) == encoder
    assert decoder_filters(N, nfs) == decoder
    assert probe_big_filters(N, nfs) == big
    # the down-sampling path ends at the 8 x 8 bottleneck, the up-sampling one at N/2
    assert N // 2 ** len(encoder) == 8 and 8 * 2 ** len(decoder) == N // 2
    assert PROBE_BIG_BORDER < decoder[-1]
