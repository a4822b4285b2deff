resource "aws_s3_bucket" "this" {
  bucket        = var.bucket_name != "" ? var.bucket_name : null
  bucket_prefix = var.bucket_name == "" ? "${var.name}-" : null
  force_destroy = var.force_destroy

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    # An interrupted spot worker can leave a multipart upload of a song behind; those parts are
    # billed until aborted.
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

locals {
  # The workers' bookkeeping (rewritten as a batch goes) and the two files rewritten after every
  # song; every other key is a song.
  bookkeeping_keys = concat(
    [for prefix in [".leases/", ".checkpoints/", ".failures/", ".records/", ".boot-failures/", ".damaged/", "logs/"] : "${aws_s3_bucket.this.arn}/${prefix}*"],
    ["${aws_s3_bucket.this.arn}/cost_report.csv", "${aws_s3_bucket.this.arn}/index.html"],
  )
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    # A song is written once (If-None-Match: *) or replaces exactly the damaged object it was read
    # as (If-Match: its ETag); a plain PUT could overwrite a finished song. S3's condition keys
    # s3:if-none-match and s3:if-match are absent (Null) when the request has no such header, and
    # s3:ObjectCreationOperation is true for PutObject and CompleteMultipartUpload only, which
    # leaves a song's CreateMultipartUpload and UploadPart (headers S3 does not take there)
    # allowed ("Enforce conditional writes on Amazon S3 buckets", S3 User Guide). The keys of one
    # operator are ANDed: denied when both headers are missing.
    sid           = "SongsAreNeverOverwritten"
    effect        = "Deny"
    actions       = ["s3:PutObject"]
    not_resources = local.bookkeeping_keys

    principals {
      type        = "AWS"
      identifiers = [var.worker_role_arn]
    }

    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }

    condition {
      test     = "Null"
      variable = "s3:if-match"
      values   = ["true"]
    }

    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["true"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # S3 rejects a policy written while the public access block is still being applied.
  depends_on = [aws_s3_bucket_public_access_block.this]
}
