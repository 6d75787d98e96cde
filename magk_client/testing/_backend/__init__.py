"""The inside of the reference backend (:class:`magk_client.testing.Backend` is its only public face).

One module per concern; each names the thread that runs its code:

==================  ===================================================================================
``wire``            JSON, SSE and WebSocket framing; control messages (pure)
``records``         what the backend saw: counters, received messages, connection log (any thread)
``faults``          the fault switches, refusals and bad messages (switches set from any thread)
``commands``        command parsing and the idempotent command desk (loop thread)
``connection``      one live WebSocket or SSE connection and its writer (loop thread)
``hub``             the open connections, the replay log, publishing and heartbeats (loop thread)
``auth``            bearer token / API key checks (loop thread)
``http``            ``POST /commands``, ``POST /messages``, ``GET /health`` (loop thread)
``websocket``       ``GET /ws/realtime`` sessions and their message handlers (loop thread)
``sse``             ``GET /events/realtime`` sessions and scripted answers (loop thread)
``server``          the aiohttp application: routes, startup and shutdown (loop thread)
``loop``            the ``magk-backend-loop`` thread and calls into it from other threads
==================  ===================================================================================
"""
