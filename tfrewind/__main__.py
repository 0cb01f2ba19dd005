"""`python -m tfrewind COMMAND ...` is the same as the `tfrewind` console script."""

from tfrewind.cli import run_main

run_main()
