"""`modelci deploy` and `modelci rollback`: a production tag moved, confirmed by the servers, or moved back."""
