"""The pqmon web dashboard: Dash pages behind a Flask login (README: How it fits together, §6).

Entry points: :func:`dashboard.app.create_app` builds the WSGI app,
:func:`dashboard.app.main` serves it.
"""
