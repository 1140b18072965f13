"""The web demo (``dysen demo``): prompt -> editable plan -> video, in a Gradio app.

``checks`` holds the pure, browser-free parts (input limits, reading an edited plan, the planner a page may
ask for); ``app`` builds the Gradio Blocks on top of ``dysen.pipeline`` and the planner. Gradio is imported
only by ``app``.
"""
