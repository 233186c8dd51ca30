"""What the scripts in ``simulations/`` share: flags, comma lists, tables and sweeps."""
