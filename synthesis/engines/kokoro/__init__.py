"""The Kokoro engine and everything only it uses: the model graph and its refinement,
the stock voice pack and its reference embeddings, G2P, pitch, timbre, envelope and
loudness matching, ``instruct_text``, and the listening guard with its recogniser.

The engine class is :class:`synthesis.engines.kokoro.engine.KokoroEngine`. This module
imports nothing, so ``python -m synthesis.engines.kokoro.voice_pack`` (run at install
time) does not load the engine.
"""
