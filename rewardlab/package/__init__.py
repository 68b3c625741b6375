"""Reading import packages (API.md, "Import package"): files, lines and images, with no database.

`package` opens the file or folder and hands out numbered lines and image bytes, `layouts` turns one line
into an `ItemSpec` (a RewardLab line through `lines`, a public preference layout through `public`), `images`
checks that bytes are a safe, decodable image. Two readers share this code so
that they accept exactly the same packages: annotate's import service (`annotate.services.imports`), which
writes rows, and rewardlab's training data reader (`rewardlab.readers`), which trains without the web app.
Nothing here may import Django or annotate.
"""
