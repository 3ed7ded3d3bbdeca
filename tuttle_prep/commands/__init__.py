"""One module per command: builds the objects, calls the core and the edges, prints. `cli.py` registers them."""
