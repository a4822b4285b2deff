provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = var.name
    }
  }
}

locals {
  # Known before the group exists: the workers' role is limited to this one group, and the
  # bucket name (unique worldwide) makes it unique per deployment.
  autoscaling_group_name = "${var.name}-workers-${module.storage.bucket_name}"
}

# The network is looked up once, here: the workers launch into the default VPC's default subnets
# (public IPs, so S3 and the git host are reachable without a NAT gateway).
data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }

  dynamic "filter" {
    for_each = length(var.availability_zones) > 0 ? [var.availability_zones] : []
    content {
      name   = "availability-zone"
      values = filter.value
    }
  }

  lifecycle {
    postcondition {
      condition     = length(self.ids) > 0
      error_message = "No default subnet in the default VPC${length(var.availability_zones) > 0 ? " in availability_zones ${join(", ", var.availability_zones)}" : ""}: create one with `aws ec2 create-default-subnet --availability-zone ZONE`, or choose other zones."
    }
  }
}

module "storage" {
  source = "./modules/storage"

  name            = var.name
  tags            = var.tags
  bucket_name     = var.bucket_name
  force_destroy   = var.force_destroy
  worker_role_arn = module.iam.role_arn
}

module "iam" {
  source = "./modules/iam"

  name                   = var.name
  tags                   = var.tags
  bucket_arn             = module.storage.bucket_arn
  git_token_parameter    = var.git_token_parameter
  autoscaling_group_name = local.autoscaling_group_name
  enable_ssm             = var.enable_ssm
}

module "worker" {
  source = "./modules/worker"

  name                   = var.name
  tags                   = var.tags
  worker_count           = var.worker_count
  instance_types         = var.instance_types
  max_price              = var.max_price
  ami_id                 = var.ami_id
  vpc_id                 = data.aws_vpc.default.id
  subnet_ids             = data.aws_subnets.default.ids
  root_volume_size_gb    = var.root_volume_size_gb
  instance_profile_name  = module.iam.instance_profile_name
  autoscaling_group_name = local.autoscaling_group_name

  region       = var.region
  bucket_name  = module.storage.bucket_name
  git_repo_url = var.git_repo_url
  git_ref      = var.git_ref
  model_path   = var.model_path
  batch_size   = var.batch_size
  audio_format = var.audio_format
  keep_alive   = var.keep_alive
  max_hours    = var.max_hours

  max_failed_boots = var.max_failed_boots

  git_token_parameter = var.git_token_parameter
}
