"""The configuration: the TOML file read once into frozen, typed objects, every mistake
refused naming its key."""
