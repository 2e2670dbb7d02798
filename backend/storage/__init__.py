"""File storage: every file Sluice keeps (documents, chat images, avatars) goes through
one interface (`base.FileStorage`), a local directory (`local`) by default or an
S3-compatible bucket (`s3`) when STORAGE_URL says so (`configured`). `copy` moves an
install's files from one to the other (`python -m backend storage copy --to s3://...`).
"""
