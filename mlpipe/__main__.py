"""`python -m mlpipe`: the same command line as `mlpipe`."""

from mlpipe.main import main

main()
