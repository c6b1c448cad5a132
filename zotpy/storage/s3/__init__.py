"""The S3 storage driver: the driver itself, the signed client, bucket operations, multipart uploads,
body streaming, the XML replies and the settings read from zot's storageDriver."""
