from django.urls import re_path

from api.consumers import TtsConsumer

websocket_urlpatterns = [
    re_path(r"^tts/?$", TtsConsumer.as_asgi()),
]
