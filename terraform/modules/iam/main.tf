data "aws_iam_policy_document" "assume_role" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name_prefix        = var.name_prefix
  description        = "musicgen-batch spot workers: read and write the batch bucket only."
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
}

data "aws_partition" "current" {
  count = var.git_token_parameter == "" ? 0 : 1
}

data "aws_region" "current" {
  count = var.git_token_parameter == "" ? 0 : 1
}

data "aws_caller_identity" "current" {
  count = var.git_token_parameter == "" ? 0 : 1
}

locals {
  # A name with a leading slash (a path) has no extra slash in its ARN.
  git_token_parameter_arns = [
    for name in compact([var.git_token_parameter]) :
    "arn:${data.aws_partition.current[0].partition}:ssm:${data.aws_region.current[0].name}:${data.aws_caller_identity.current[0].account_id}:parameter/${trimprefix(name, "/")}"
  ]
}

data "aws_iam_policy_document" "bucket_access" {
  statement {
    # GetObject also authorises HEAD, which the worker uses to skip songs that already exist.
    sid       = "ReadWriteObjects"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.bucket_arn}/*"]
  }

  statement {
    # A failed or lost multipart upload (songs over 64 MiB) is aborted by the worker; without
    # this S3 answers AccessDenied, which hides the real error, and the parts stay billed until
    # the lifecycle rule removes them.
    sid       = "AbortMultipartUploads"
    actions   = ["s3:AbortMultipartUpload"]
    resources = ["${var.bucket_arn}/*"]
  }

  statement {
    # Without ListBucket S3 answers 403 instead of 404 for a missing key, and the worker could not
    # tell "not made yet" from "forbidden".
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  statement {
    # Resume checkpoints, work-claim leases and failed-attempt counts are removed when a song
    # finishes; songs, reports and logs can never be deleted by a worker.
    sid     = "DeleteBookkeeping"
    actions = ["s3:DeleteObject"]
    resources = [
      "${var.bucket_arn}/.checkpoints/*",
      "${var.bucket_arn}/.failures/*",
      "${var.bucket_arn}/.leases/*",
    ]
  }

  dynamic "statement" {
    # The git token of a private repository: this one parameter, read only. No kms:Decrypt:
    # a SecureString under the AWS managed key aws/ssm (the default) is decrypted for every
    # principal of the account that may read the parameter; AWS documents that this key "grants
    # Decrypt permission to all IAM principals in the AWS account"
    # (https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html).
    # A customer managed key would need its own grant in its key policy.
    for_each = local.git_token_parameter_arns
    content {
      sid       = "ReadGitToken"
      actions   = ["ssm:GetParameter"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "musicgen-batch-bucket"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.bucket_access.json
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = var.name_prefix
  role        = aws_iam_role.this.name
}
