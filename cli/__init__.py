"""The `artifactfs` command line: click commands, each a thin call into the artifactfs library."""
