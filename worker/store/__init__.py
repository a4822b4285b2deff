"""Where songs and bookkeeping live: a local folder or an S3 prefix behind one interface, the
leases on songs and who holds them, and a log line while S3 keeps a call waiting."""
