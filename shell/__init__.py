"""datsync.shell: the imperative shell (trio): storage, network, the process and the CLI."""
