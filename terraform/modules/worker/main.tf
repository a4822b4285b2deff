locals {
  ami_id     = var.ami_id != "" ? var.ami_id : data.aws_ami.this[0].id
  worker_tag = { Role = "musicgen-batch-worker" }
}

data "aws_ami" "this" {
  count = var.ami_id == "" ? 1 : 0

  most_recent = true
  owners      = ["self"]

  filter {
    name   = "name"
    values = ["musicgen-batch-*"]
  }
}

data "aws_vpc" "default" {
  default = true
}

resource "aws_security_group" "this" {
  name_prefix = "musicgen-batch-worker-"
  description = "musicgen-batch workers: no inbound traffic, HTTPS out only"
  vpc_id      = data.aws_vpc.default.id

  egress {
    description = "HTTPS to the git host, S3 and Hugging Face"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.worker_tag, { Name = "musicgen-batch-worker" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_instance" "this" {
  count = var.worker_count

  ami                    = local.ami_id
  instance_type          = var.instance_type
  availability_zone      = var.availability_zone != "" ? var.availability_zone : null
  iam_instance_profile   = var.instance_profile_name
  vpc_security_group_ids = [aws_security_group.this.id]
  ebs_optimized          = true

  # shutdown_when_done ends the worker for good: nothing keeps billing once the batch is done.
  instance_initiated_shutdown_behavior = "terminate"

  instance_market_options {
    market_type = "spot"

    spot_options {
      max_price = var.max_price
      # One-time + terminate, not persistent + stop: EC2 reopens a persistent request when its
      # instance is terminated, and terraform destroy does not cancel it (provider issue
      # #38142), so a replacement nobody tracks would keep billing. An interrupted batch loses
      # nothing: its checkpoints are in the bucket and the next `python launcher` resumes it.
      spot_instance_type             = "one-time"
      instance_interruption_behavior = "terminate"
    }
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.worker_tag, { Name = "musicgen-batch-worker-${count.index}" })
  }

  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    repo_url           = var.git_repo_url
    repo_ref           = var.git_ref
    bucket             = var.bucket_name
    region             = var.region
    hourly_cost_usd    = var.max_price
    model_path         = var.model_path
    batch_size         = var.batch_size
    audio_format       = var.audio_format
    shutdown_when_done = var.shutdown_when_done ? "1" : "0"

    git_token_parameter   = var.git_token_parameter
    git_credential_helper = file("${path.module}/files/git-credential-ssm.py")
  })

  tags = merge(local.worker_tag, { Name = "musicgen-batch-worker-${count.index}" })
}
