"""The inside of :class:`magk_client.testing.FaultProxy` (its only public face).

==========  =========================================================================================
``plan``    the faults in force and the decisions they make: due times, send sizes, pacing (pure)
``relay``   one proxied connection: its two sockets, one pipe per direction, read / flush / FIN / cut
``loop``    the ``magk-proxy-<port>`` thread: selector, listener, accept, counters, control commands
==========  =========================================================================================
"""
