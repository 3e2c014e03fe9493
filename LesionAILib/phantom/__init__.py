"""Synthetic multiparametric prostate MRI cohorts (T2w, ADC, high-b DWI) with exact ground truth.

The detection networks of LesionAI are trained and tested on these phantoms, so they aim to look like
real bi-parametric prostate MRI (ProstateX / PI-CAI) and to be hard in the same ways. In pipeline order:
profiles (the sites' acquisition protocols), tissues (MR properties), shapes (soft ellipsoids and
irregular blobs), anatomy (the random normal pelvis and prostate), lesions (cancers and benign mimics
and their measured ground truth), rendering (partial-volume painting on an image grid), acquisition
(signals, texture, bias field, noise, ADC fit), cases (``generate_case``) and cohort (``write_cohort``,
the PI-CAI layout).
"""
