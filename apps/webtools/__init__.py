"""Web tools a language model may call through the server: fetch one page (``fetch``), search (``search``).

The server, not the model, opens the connections, so every fetch goes through ``guard``'s address policy: a
model must not be able to reach the server's own network (loopback, private ranges, cloud metadata).
"""
