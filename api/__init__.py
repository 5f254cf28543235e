"""Entry points: REST views, the /tts WebSocket consumer and its wire protocol, admin
previews, the admin panel, OpenAPI and the per-process metrics those entry points feed."""
