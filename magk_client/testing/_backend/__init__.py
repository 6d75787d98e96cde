"""The inside of the reference backend (:class:`magk_client.testing.Backend` is its only public face).

One module per concern; each says which thread runs its code:

===============  ======================================================================================
``wire``         JSON, SSE and WebSocket framing; control messages (pure)
``records``      what the backend saw: the loop writes ``Records``, any thread reads ``RecordsView``
``faults``       the fault switches (set from any thread), refusals and bad messages (pure)
``controls``     ``Backend.faults``: the command-level fault controls (any thread)
``commands``     command parsing (pure) and the idempotent, recording ``CommandDesk`` (loop thread)
``acks``         the ``MessageDesk``: each plain client message processed once per id, acks (loop thread)
``connection``   one live WebSocket or SSE connection and its writer (loop thread)
``hub``          the open connections, the replay log, publishing and heartbeats (loop thread)
``context``      the options and parts every handler shares
``auth``         token / API key checks and handshake refusals (loop thread)
``http_routes``  ``POST /commands``, ``POST /messages``, ``GET /health`` (loop thread)
``ws_route``     ``GET /ws/realtime`` sessions and their per-type message handlers (loop thread)
``sse_route``    ``GET /events/realtime`` sessions and scripted answers (loop thread)
``server``       the aiohttp application: routes, startup and shutdown (loop thread)
``loop``         the ``magk-backend-loop`` thread, and calls into it from other threads
===============  ======================================================================================

A new HTTP endpoint is a handler and a row in ``HttpRoutes.routes``; a new WebSocket message type is a
handler and a row in ``WebSocketRoute.handlers``; every command, whatever brought it, goes through
``CommandDesk.run``, and every other client message (but ping and pong) through ``MessageDesk.take``.
"""
