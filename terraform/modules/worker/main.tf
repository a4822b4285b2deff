locals {
  worker_tag = { Role = "${var.name}-worker" }
  # The provider's default_tags reach neither the group's tags nor a launch template's
  # tag_specifications, the tags of the instances and volumes: they are merged in here.
  instance_tags = merge(data.aws_default_tags.current.tags, var.tags, local.worker_tag, { Name = "${var.name}-worker" })
}

data "aws_default_tags" "current" {}

data "aws_ami" "this" {
  most_recent = true
  owners      = var.ami_id == "" ? ["self"] : null

  # Looked up by id too: the root volume's device name is the AMI's.
  filter {
    name   = var.ami_id == "" ? "name" : "image-id"
    values = [var.ami_id == "" ? "musicgen-batch-*" : var.ami_id]
  }
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-worker-"
  description = "${var.name} workers: no inbound traffic, HTTPS out only"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to the git host, S3 and Hugging Face"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(var.tags, local.worker_tag, { Name = "${var.name}-worker" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-worker-"
  description            = "${var.name} spot workers: one worker per GPU on the batch in s3://${var.bucket_name}"
  image_id               = data.aws_ami.this.id
  ebs_optimized          = true
  update_default_version = true
  vpc_security_group_ids = [aws_security_group.this.id]

  # No instance_initiated_shutdown_behavior: a group's spot instances come from one-time
  # requests, which EC2 cannot stop, so the fallback power-off terminates the instance.

  iam_instance_profile {
    name = var.instance_profile_name
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = data.aws_ami.this.root_device_name

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  # gzip: EC2 counts UserData's raw bytes (at most 16 KB) and cloud-init uncompresses gzip content
  # before it runs it (cloud-init's docs, "User-Data Formats": Gzip Compressed Content).
  user_data = base64gzip(templatefile("${path.module}/templates/user_data.sh.tftpl", {
    repo_url        = var.git_repo_url
    repo_ref        = var.git_ref
    bucket          = var.bucket_name
    region          = var.region
    hourly_cost_usd = var.max_price
    model_path      = var.model_path
    batch_size      = var.batch_size
    audio_format    = var.audio_format
    keep_alive      = var.keep_alive ? "1" : "0"
    max_hours       = var.max_hours
    # systemd's backstop for a hung worker: the worker's own cap, plus time for its last window
    # and checkpoint.
    runtime_max_sec = ceil(var.max_hours * 3600) + 900
    # The boot unit's: the checkout (15 min), the workers, the end (20 min), and slack.
    boot_timeout_sec = ceil(var.max_hours * 3600) + 900 + 3600
    max_failed_boots = var.max_failed_boots

    git_token_parameter   = var.git_token_parameter
    git_credential_helper = file("${path.module}/files/git-credential-ssm.py")
    aws_retry             = file("${path.module}/files/aws_retry.py")
    end_program           = file("${path.module}/files/instance_end.py")
    sandbox               = file("${path.module}/files/sandbox.conf")
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.instance_tags
  }

  tags = merge(var.tags, local.worker_tag)
}

resource "aws_autoscaling_group" "this" {
  name                = var.autoscaling_group_name
  min_size            = 0
  max_size            = var.worker_count
  desired_capacity    = var.worker_count
  vpc_zone_identifier = var.subnet_ids
  # A spot instance at elevated interruption risk gets its replacement launched first.
  capacity_rebalance = true
  # A worker's own scale-in (TerminateInstanceInAutoScalingGroup with a decrement) can leave the
  # zones unbalanced, and "rebalancing might terminate instances in other zones" (its API
  # reference): busy workers. AZRebalance stays suspended; capacity rebalancing (above) is a
  # separate process and stays on.
  suspended_processes = ["AZRebalance"]
  health_check_type   = "EC2"

  # Spot capacity may take long or not come at all: apply returns once the group exists and
  # `python launcher status` follows the launches.
  wait_for_capacity_timeout = "0"
  # On destroy the provider sets the group to 0 and waits until its instances are terminated
  # (each worker gets its stop signal and saves its checkpoint) before it deletes the group; so
  # the launch template and security group go only after the last instance, and no instance
  # outlives the group. force_delete would delete the group without that wait.
  force_delete = false

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
      spot_max_price                           = var.max_price
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = aws_launch_template.this.latest_version
      }

      dynamic "override" {
        for_each = var.instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  dynamic "tag" {
    for_each = merge(data.aws_default_tags.current.tags, var.tags, local.worker_tag)
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # Workers scale the group in themselves when their batch is done; a later apply must not
    # launch them again. The launcher offers to raise it when songs are missing.
    ignore_changes = [desired_capacity]
  }
}
