"""The chatroom console client and its Python API."""
