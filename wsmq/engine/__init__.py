"""The delivery engine: per-queue consumers that move messages from Redis to subscribers.

It knows queues and subscribers, not WebSockets: the gateway adapts sockets to its
:class:`~wsmq.engine.consumer.Subscriber` protocol.
"""
