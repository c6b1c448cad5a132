"""zot's GraphQL search API (``extensions.search``): schema, resolvers over the metadata, cluster fan-out."""
