"""The pqmon web dashboard: Dash pages behind a Flask login (docs/architecture.md, docs/security.md).

Entry points: :func:`dashboard.app.create_app` builds the WSGI app,
:func:`dashboard.app.main` serves it.
"""
