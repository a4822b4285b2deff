# Worker AMI: NVIDIA driver base + a venv with the worker's dependencies + the MusicGen weights,
# checked by the worker's own engine generating one second of audio on every GPU of the build instance.
#   packer init packer/ && packer build packer/
packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  description = "Region the AMI is built in (use the region of the terraform deployment)."
  type        = string
  default     = "us-east-1"
}

variable "instance_type" {
  description = "GPU build instance; the smoke check needs CUDA."
  type        = string
  default     = "g4dn.xlarge"
}

variable "root_volume_size_gb" {
  description = "Root volume of the AMI; terraform's root_volume_size_gb must be at least this."
  type        = number
  default     = 100
}

variable "model_id" {
  description = "Hugging Face model baked into the AMI: facebook/musicgen-small, -medium or -large, or facebook/musicgen-stereo-small, -medium or -large (see docs/audio.md for GPU memory per size)."
  type        = string
  default     = "facebook/musicgen-small"
}

variable "model_dir" {
  description = "Folder of the baked model (terraform's model_path), whichever model_id is baked."
  type        = string
  default     = "/opt/musicgen/models/musicgen-small"
}

variable "python" {
  description = "Python of the venv: the worker needs 3.11+ (datetime.UTC), Ubuntu 22.04's python3 is 3.10."
  type        = string
  default     = "python3.11"
}

variable "venv_dir" {
  description = "Python venv the worker runs in (the bootstrap's MUSICGEN_VENV)."
  type        = string
  default     = "/opt/musicgen/venv"
}

locals {
  build_time = formatdate("YYYYMMDD-hhmmss", timestamp())
}

source "amazon-ebs" "musicgen" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "musicgen-batch-${local.build_time}"
  ssh_username  = "ubuntu"

  ami_description = "musicgen-batch worker: NVIDIA driver, CUDA torch venv at ${var.venv_dir}, ${var.model_id} at ${var.model_dir}"

  source_ami_filter {
    filters = {
      name                = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  # Instances launched from the AMI default to IMDSv2 only; the build instance uses it too.
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.root_volume_size_gb
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name          = "musicgen-batch-${local.build_time}"
    Project       = "musicgen-batch"
    Role          = "musicgen-batch-worker"
    Model         = var.model_id
    SourceAMIName = "{{ .SourceAMIName }}"
  }
  run_tags = {
    Name    = "musicgen-batch-ami-build"
    Project = "musicgen-batch"
  }
}

build {
  sources = ["source.amazon-ebs.musicgen"]

  provisioner "file" {
    source      = "${path.root}/requirements.txt"
    destination = "/tmp/musicgen-requirements.txt"
  }

  provisioner "file" {
    source      = "${path.root}/smoke_check.py"
    destination = "/tmp/musicgen-smoke-check.py"
  }

  # The smoke check runs the worker's own engine, so it needs the worker package and the
  # contract package it imports (no trailing slash: each folder itself lands in /tmp, as
  # /tmp/worker and /tmp/contract).
  provisioner "file" {
    source      = "${path.root}/../worker"
    destination = "/tmp"
  }

  provisioner "file" {
    source      = "${path.root}/../contract"
    destination = "/tmp"
  }

  # The worker units' sandbox, the same file the instances' UserData installs, and the script
  # that runs the smoke check inside it.
  provisioner "file" {
    source      = "${path.root}/../terraform/modules/worker/files/sandbox.conf"
    destination = "/tmp/musicgen-sandbox.conf"
  }

  provisioner "file" {
    source      = "${path.root}/sandboxed_smoke_check.sh"
    destination = "/tmp/musicgen-sandboxed-smoke-check.sh"
  }

  provisioner "shell" {
    environment_vars = [
      "PYTHON=${var.python}",
      "VENV_DIR=${var.venv_dir}",
      "MODEL_ID=${var.model_id}",
      "MODEL_DIR=${var.model_dir}",
      "DEBIAN_FRONTEND=noninteractive",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Vars }} bash -euxo pipefail {{ .Path }}"
    inline = [
      # apt is locked until the first boot's cloud-init is done.
      "cloud-init status --wait || true",
      "apt-get update",
      "apt-get install -y --no-install-recommends git \"$PYTHON\" \"$PYTHON-venv\"",
      "\"$PYTHON\" -m venv \"$VENV_DIR\"",
      "\"$VENV_DIR/bin/pip\" install --no-cache-dir --upgrade pip",
      "\"$VENV_DIR/bin/pip\" install --no-cache-dir -r /tmp/musicgen-requirements.txt",
      "mkdir -p \"$MODEL_DIR\"",
      "\"$VENV_DIR/bin/python\" -c 'import os, huggingface_hub; huggingface_hub.snapshot_download(os.environ[\"MODEL_ID\"], local_dir=os.environ[\"MODEL_DIR\"])'",
      "rm -rf \"$MODEL_DIR/.cache\"",
      # The worker's unprivileged user (no login shell, home = its systemd StateDirectory): it owns
      # the checkout; the venv and the model stay root's and read-only to it.
      "useradd --system --user-group --home-dir /var/lib/musicgen-batch --no-create-home --shell /usr/sbin/nologin musicgen",
      "install -d -o musicgen -g musicgen -m 0750 /opt/musicgen/app",
      "chown -R root:root \"$VENV_DIR\" \"$MODEL_DIR\"",
      "chmod -R u+rwX,go+rX,go-w \"$VENV_DIR\" \"$MODEL_DIR\"",
      # Outside /tmp, which the sandbox makes private.
      "install -d -m 0755 /opt/musicgen/smoke && mv /tmp/worker /tmp/contract /tmp/musicgen-smoke-check.py /opt/musicgen/smoke/",
      # Every GPU as root: the driver, CUDA torch and the model.
      "PYTHONPATH=/opt/musicgen/smoke \"$VENV_DIR/bin/python\" /opt/musicgen/smoke/musicgen-smoke-check.py \"$MODEL_DIR\"",
      # Again as the worker units run it: the musicgen user in their sandbox, by systemd-run.
      "bash /tmp/musicgen-sandboxed-smoke-check.sh /tmp/musicgen-sandbox.conf /usr/bin/env PYTHONPATH=/opt/musicgen/smoke \"$VENV_DIR/bin/python\" /opt/musicgen/smoke/musicgen-smoke-check.py \"$MODEL_DIR\"",
      "rm -rf /tmp/musicgen-requirements.txt /tmp/musicgen-sandbox.conf /tmp/musicgen-sandboxed-smoke-check.sh /opt/musicgen/smoke /var/cache/musicgen-batch /var/log/musicgen-batch",
    ]
  }
}
