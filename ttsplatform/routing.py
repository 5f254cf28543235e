from django.urls import path

from synthesis.consumers import TtsConsumer

websocket_urlpatterns = [
    path("tts", TtsConsumer.as_asgi()),
]
