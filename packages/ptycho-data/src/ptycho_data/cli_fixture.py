"""``ptycho fixture``: cut a small reproducible test fixture out of a dataset."""

from __future__ import annotations

import argparse

from ptycho_core.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``fixture`` subcommand to the ``ptycho`` parser and return its parser."""
    parser = subparsers.add_parser(
        "fixture",
        help="write a small stratified subsample of a dataset as a reproducible NPZ fixture",
        description=(
            "Keep N scan positions spread evenly over the scanned area (one per cell of a "
            "sqrt(N) x sqrt(N) grid, the rest drawn at random with the seed), write them in the "
            "canonical NPZ layout with byte-reproducible output, and write OUTPUT.json recording the "
            "source, sha256 checksums, chosen indices, seed and package version."
        ),
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="dataset to subsample: an .npz file, a lazy dataset directory or a lazy .h5 file")
    parser.add_argument("output", metavar="OUTPUT", help="fixture .npz to write (its sidecar is OUTPUT.json)")
    parser.add_argument("--n-positions", type=int, default=64, metavar="N",
                        help="number of scan positions to keep (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws (default: 0)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``ptycho fixture``; returns the exit code (0 on success)."""
    from ptycho_data.fixtures import make_fixture, sidecar_path

    if args.n_positions < 1:
        raise DataError(f"--n-positions: expected a positive integer, got {args.n_positions}")
    output = make_fixture(args.source, args.output, args.n_positions, seed=args.seed)
    print(f"wrote {output} ({args.n_positions} positions, seed {args.seed}) and {sidecar_path(output)}")
    return 0
