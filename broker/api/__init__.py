"""HTTP resources, one module per resource, each exposing `routes` (a RouteTableDef)."""
