"""The live dashboard: server-rendered pages, plain JavaScript, a Channels websocket for status events."""
