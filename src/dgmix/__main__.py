"""``python -m dgmix`` is the same CLI as ``dgmix`` (so ``torchrun -m dgmix pretrain`` works)."""

from dgmix.cli import main

if __name__ == "__main__":
    main()
