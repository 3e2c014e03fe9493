"""LesionAIWeb: the browser reading page (``lesionai serve``) on the Slicer module's scene logic and panel controller.

=================  ======================================================================================
module             concern
=================  ======================================================================================
``serve``          ``lesionai serve``: settings checked, studies found, the address and token printed
``front``          the front server: token, one session process per browser, proxy (no slicer, no vtk)
``workers``        starting and stopping session processes
``proxy``          forwarding a browser's requests and websocket to its session process
``worker``         one session's process: trame-slicer server, scene, panel controller, page
``session``        the page's actions as calls into the panel controller; the per-study queue
``drawing``        the controller's view as the page's state
``page``           the page's layout (trame, Vuetify 3)
``confinement``    only studies inside the studies root can be opened
``study_locks``    one analysis at a time per study, across sessions
``access_log``     who opened and analysed which study (JSON lines)
=================  ======================================================================================

Only ``worker``, ``session``, ``drawing`` and ``page`` import slicer, vtk or trame; the front server does not.
"""
