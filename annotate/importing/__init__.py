"""Reading import packages (API.md, "Import package"): files, lines and images, with no database.

`package` opens the file and hands out numbered lines and image bytes, `lines` turns one line into an
`ItemSpec`, `images` checks that bytes are a safe, decodable image. `annotate.services.imports` puts
them together and writes rows.
"""
