"""Character-level language modelling with a multiplicative RNN trained by HF (SMH11, in small).

    python examples/text.py                     # about two and a half minutes on a 2-core CPU
    python examples/text.py --backend torch --device cuda --hidden 500 --factors 500 \\
        --max-chars 5000000 --iterations 200    # closer to the paper, on a GPU

The corpus is one every machine has: the Python standard library's own source files,
concatenated (arrayhf.data.corpus.python_stdlib_corpus). The model reads characters as integer ids
(no one-hot on the hot path) and predicts the next one; the first 10 characters of each
substring only warm the hidden state up and are not scored. After every HF iteration it prints
bits per character on the training batches and on the held-out last 10% of the corpus, beside the
unigram entropy (what a model that ignores context achieves), then samples some text.

This is `arrayhf train-text --stdlib ...` followed by `arrayhf sample ...`; the run directory
keeps the logs and checkpoints, so `arrayhf resume runs/text-example` trains on.
"""

from __future__ import annotations

import argparse
import sys

from arrayhf import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--device", default=None)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--factors", type=int, default=100)
    parser.add_argument("--max-chars", type=int, default=300_000)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--run-dir", default="runs/text-example")
    args = parser.parse_args(argv)
    train = ["train-text", "--stdlib", "--max-chars", str(args.max_chars), "--T", "50",
             "--hidden", str(args.hidden), "--factors", str(args.factors), "--batch-size", "100",
             "--train-batches", "5", "--test-batches", "2", "--iterations", str(args.iterations),
             "--max-cg", "60", "--backend", args.backend, "--run-dir", args.run_dir]
    if args.device:
        train += ["--device", args.device]
    status = cli.main(train)
    if status != 0:
        return status
    sample = ["sample", args.run_dir, "--length", "300", "--prime", "def ", "--temperature",
              "0.7", "--backend", args.backend]
    if args.device:
        sample += ["--device", args.device]
    return cli.main(sample)


if __name__ == "__main__":
    sys.exit(main())
