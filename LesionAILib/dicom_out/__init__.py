"""Results out to PACS: the T2 source series, DICOM SEG / Parametric Map / TID 1500 SR of a result, C-STORE sending."""
