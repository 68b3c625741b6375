"""Label quality as pure math: consensus, agreement and bias from arrays of labels (DESIGN.md, "Quality").

Nothing here imports Django: the services load labels with `values_list`, turn them into a
`LabelTable` of numpy arrays, and call these functions, so they stay fast on 100k labels and a unit
test can check them on hand-made tables.
"""
