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
  name_prefix        = "${var.name}-worker-"
  description        = "${var.name} spot workers: the batch bucket, and scale-in of their own group."
  assume_role_policy = data.aws_iam_policy_document.assume_role.json

  tags = var.tags
}

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  arn_prefix = "arn:${data.aws_partition.current.partition}"
  account    = "${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  # A name with a leading slash (a path) has no extra slash in its ARN.
  git_token_parameter_arns = [
    for name in compact([var.git_token_parameter]) :
    "${local.arn_prefix}:ssm:${local.account}:parameter/${trimprefix(name, "/")}"
  ]
  # The group's ARN holds its id, a UUID AWS assigns at creation: any id, this exact name.
  autoscaling_group_arn = "${local.arn_prefix}:autoscaling:${local.account}:autoScalingGroup:*:autoScalingGroupName/${var.autoscaling_group_name}"
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

  statement {
    # A finished worker removes its own instance from the group and lowers the desired capacity
    # (TerminateInstanceInAutoScalingGroup, ShouldDecrementDesiredCapacity=true), so the group
    # does not replace it. AWS's Service Authorization Reference for Amazon EC2 Auto Scaling
    # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html)
    # lists this action with the required resource type autoScalingGroup (ARN
    # arn:${Partition}:autoscaling:${Region}:${Account}:autoScalingGroup:${GroupId}:autoScalingGroupName/${GroupFriendlyName})
    # and the condition keys autoscaling:ResourceTag/${TagKey} and aws:ResourceTag/${TagKey}:
    # the ARN with this group's name limits it to the instances of this one group.
    sid       = "ScaleInOwnGroup"
    actions   = ["autoscaling:TerminateInstanceInAutoScalingGroup"]
    resources = [local.autoscaling_group_arn]
  }

  statement {
    # After max_failed_boots boots that ran nothing, the failing instance sets its own group's
    # desired capacity to 0. The same reference lists SetDesiredCapacity (Write) with the
    # required resource type autoScalingGroup: this group's ARN, as above.
    sid       = "StopOwnGroup"
    actions   = ["autoscaling:SetDesiredCapacity"]
    resources = [local.autoscaling_group_arn]
  }

  statement {
    # The worker finds its group from its instance id. The same reference lists
    # DescribeAutoScalingInstances (access level List) with no resource type, so AWS requires
    # "*"; it reads, never changes, and only names groups and instances.
    sid       = "FindOwnGroup"
    actions   = ["autoscaling:DescribeAutoScalingInstances"]
    resources = ["*"]
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
  name   = "${var.name}-worker"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.bucket_access.json
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-worker-"
  role        = aws_iam_role.this.name

  tags = var.tags
}

# Opt-in: Session Manager shells on the workers (no SSH, no inbound port). It also grants the
# SSM agent's own calls (ssm:UpdateInstanceInformation, ssmmessages:*, ec2messages:*).
resource "aws_iam_role_policy_attachment" "ssm" {
  count = var.enable_ssm ? 1 : 0

  role       = aws_iam_role.this.name
  policy_arn = "${local.arn_prefix}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
