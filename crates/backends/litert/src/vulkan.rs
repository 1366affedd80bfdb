//! The Vulkan adapter LiteRT's WebGPU accelerator (Dawn) would run on, found the way Dawn
//! finds it: through the Vulkan loader (`libvulkan.so.1`, loaded at run time by ash) and its
//! physical devices. A device of type CPU is a software rasteriser (Mesa's lavapipe): real,
//! correct, and seconds per inference, so it is reported as software.

use std::sync::OnceLock;

use ash::vk;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    pub name: String,
    /// Vulkan's device type: `discrete GPU`, `integrated GPU`, `virtual GPU`, `CPU`, ...
    pub device_type: String,
    pub api_version: String,
    pub software: bool,
}

impl Adapter {
    /// `llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan 1.4, CPU: software)`, for the CSV.
    pub fn describe(&self) -> String {
        let software = if self.software { ": software" } else { "" };
        format!(
            "{} (Vulkan {}, {}{software})",
            self.name, self.api_version, self.device_type
        )
    }
}

/// The adapter (cached for the process): the first hardware GPU, else a software one.
pub fn adapter() -> Result<Adapter, String> {
    static ADAPTER: OnceLock<Result<Adapter, String>> = OnceLock::new();
    ADAPTER.get_or_init(find).clone()
}

fn find() -> Result<Adapter, String> {
    mobilebench_backend::prepare_vulkan_environment();
    // SAFETY: loading the Vulkan loader runs only its initialisers.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| {
        format!("no Vulkan loader ({e}): install libvulkan1 and a Vulkan driver (for software Vulkan on Debian 12: mesa-vulkan-drivers from bookworm-backports)")
    })?;
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a minimal instance, destroyed below; the devices are only queried.
    unsafe {
        let instance = entry
            .create_instance(&info, None)
            .map_err(|e| format!("the Vulkan loader found no usable driver ({e})"))?;
        let devices = instance.enumerate_physical_devices();
        let adapters: Vec<Adapter> = devices
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let p = instance.get_physical_device_properties(d);
                let name = p
                    .device_name_as_c_str()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "unnamed".into());
                let device_type = match p.device_type {
                    vk::PhysicalDeviceType::DISCRETE_GPU => "discrete GPU",
                    vk::PhysicalDeviceType::INTEGRATED_GPU => "integrated GPU",
                    vk::PhysicalDeviceType::VIRTUAL_GPU => "virtual GPU",
                    vk::PhysicalDeviceType::CPU => "CPU",
                    _ => "other",
                };
                Adapter {
                    name,
                    device_type: device_type.into(),
                    api_version: format!(
                        "{}.{}",
                        vk::api_version_major(p.api_version),
                        vk::api_version_minor(p.api_version)
                    ),
                    software: p.device_type == vk::PhysicalDeviceType::CPU,
                }
            })
            .collect();
        instance.destroy_instance(None);
        adapters
            .iter()
            .find(|a| !a.software)
            .or_else(|| adapters.first())
            .cloned()
            .ok_or_else(|| "Vulkan has no device here: install a GPU driver, or for software Vulkan on Debian 12 mesa-vulkan-drivers from bookworm-backports (Debian 12's own lavapipe is too old for LiteRT)".into())
    }
}
