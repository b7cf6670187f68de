"""`python -m artifactfs ...`: the same command line as `artifactfs ...`."""

from artifactfs_cli.main import main

main()
