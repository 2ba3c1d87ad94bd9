"""The investigator's report: one self-contained, offline HTML page per verified recording.

Built on what the opener and export already compute; never imported by the unit's recorder.
"""
