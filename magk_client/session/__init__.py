"""The rooms of a :class:`~magk_client.service.RealtimeService`, one per thread role.

The way the ``websockets`` library separates protocol, connection and client:

:mod:`.state`       the shared :class:`~.state.Session` (lock, condition, config, policies) and
                    the one place a session is declared failed (``fail_session_locked``)
:mod:`.stats`       the counters behind ``get_connection_health()``
:mod:`.supervisor`  ``magk-supervisor-N``: attempts, watch, switch and switch back, teardown
:mod:`.connecting`  building a transport, the handshake the supervisor makes on its own
:mod:`.outbound`    ``send_message`` -> offline queue -> flush on connect -> ``transport.send``
:mod:`.inbound`     ``magk-reader-N-M``: read, decode, control messages, de-duplication, hand-off
:mod:`.dispatch`    ``magk-dispatcher-N``: batches, notices, listeners; :class:`~.dispatch.MessageStream`
:mod:`.lifecycle`   starting and ending sessions (connect, disconnect, close; any user thread)

Threads hold their room only through a weak reference between steps (see :mod:`..reclaim`);
no room holds the service itself.
"""
