"""The LesionAI panel's state and decisions, without Qt: one controller that the Qt panel and the browser page bind.

=================  ===================================================================================
module             concern
=================  ===================================================================================
``state``          :class:`PanelState`: the panel's fields on the module's parameter node (saved with
                   the scene; the same parameter names and formats as Slicer's parameterNodeWrapper)
``controller``     :class:`PanelController`: the user's actions, the jobs they start, what the panel shows
``reading``        load, roles, analyze/cancel, candidate table, jumping, heatmap controls, point and classify
``annotating``     annotation with prefill, grades, save to the deployment dataset, next case
``modelling``      model versions, dependencies, fine-tune/cancel, activate, rollback
``glanding``       the prostate gland (TAPS, a job): segment/cancel, volume, PSA and PSA density
``abnormality``    the abnormality map (synthesis) layer beside the heatmap, and the box viewer (a job)
``views``          the records a front end draws (:class:`PanelView` and its sections)
=================  ===================================================================================

A front end (``LesionAI.py`` in Slicer, the browser page) calls one controller method per user
action and draws ``controller.view()``; it decides nothing itself. Everything here runs on the
``slicer-core`` wheel, where the tests walk it through a radiologist's and an annotator's session.
"""
