"""The public SQL surface: one ``.sql`` file per view (see each file's header), and their runner."""
