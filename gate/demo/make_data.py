"""Writes ``digits.npz``, the demo's data: the 1,797 8x8 digit images that scikit-learn ships.

Run once by a maintainer (``python -m gate.demo.make_data``); the file is committed so the demo needs
neither scikit-learn nor a network. Pixels are stored as their original 0..16 integers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_FILE = Path(__file__).with_name("digits.npz")


def main() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez_compressed(
        DATA_FILE, pixels=digits.images.astype(np.uint8), labels=digits.target.astype(np.uint8)
    )
    print(f"wrote {DATA_FILE}")


if __name__ == "__main__":
    main()
