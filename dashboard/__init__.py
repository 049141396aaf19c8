"""The pqmon web dashboard: Dash pages behind a Flask login (DESIGN §2, §6).

Entry points: :func:`dashboard.app.create_app` builds the WSGI app,
:func:`dashboard.app.main` serves it.
"""
