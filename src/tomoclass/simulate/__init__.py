"""tomoclass.simulate."""
